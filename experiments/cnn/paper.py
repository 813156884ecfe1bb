"""The paper's CIFAR test accuracies (Ren et al. 2017, Tables 3 and 7), for labelled comparison."""

# variant -> (CIFAR-10, CIFAR-100) test accuracy reported in the paper.
PAPER_ACCURACY = {
    "baseline": (0.7565, 0.4409),
    "baseline+L1": (0.7839, 0.4517),
    "BN": (0.7807, 0.4814),
    "BN+L1": (0.8067, 0.5100),
    "BN-s": (0.8017, 0.5005),
    "BN*": (0.8179, 0.5156),
    "LN": (0.7211, 0.4249),
    "LN+L1": (0.7994, 0.4990),
    "LN-s": (0.8083, 0.4863),
    "LN*": (0.8091, 0.4957),
    "DN": (0.8058, 0.4892),
    "DN*": (0.8122, 0.5066),
}
