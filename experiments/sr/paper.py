"""The paper's super-resolution results (Ren et al. 2017, §5.3; REFERENCE §5).

PSNR (dB) / SSIM on the Y channel after their training (their data and schedule,
up to 1e8 steps of batch 1); test sets Set14 and BSD200. Their numbers, not ours.
"""

PAPER = {
    # model: {(test set, scale): (psnr, ssim)}
    "bicubic": {("Set14", 3): (27.54, 0.7733), ("Set14", 4): (26.01, 0.7018),
                ("BSD200", 3): (27.19, 0.7636), ("BSD200", 4): (25.92, 0.6952)},
    "srcnn": {("Set14", 3): (29.35, 0.8212), ("Set14", 4): (27.53, 0.7512),
              ("BSD200", 3): (28.42, 0.8100), ("BSD200", 4): (26.87, 0.7378)},
    "bn": {("Set14", 3): (22.31, 0.7530), ("Set14", 4): (21.40, 0.6851),
           ("BSD200", 3): (21.89, 0.7553), ("BSD200", 4): (21.53, 0.6741)},
    "dn": {("Set14", 3): (29.34, 0.8219), ("Set14", 4): (27.64, 0.7562),
           ("BSD200", 3): (28.44, 0.8110), ("BSD200", 4): (26.96, 0.7428)},
}
PAPER_SETS = ("Set14", "BSD200")
