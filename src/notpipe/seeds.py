"""Offsets of every derived random stream, in one place.

Training draws from ``torch.Generator().manual_seed(seed)``; evaluation, grids and
figures draw from ``seed + OFFSET`` so they never consume (or collide with) the
training stream, and a resumed run sees the same batches.
"""

#: toy metrics (fresh samples of source and target, and z)
TOY_EVAL = 1_000_003
#: toy fidelity draws (W2, noise floor, energy distance; independent of the other metrics)
TOY_FIDELITY = 3 * TOY_EVAL
#: toy figure arrays (``2 * TOY_EVAL``)
TOY_PLOT = 2 * TOY_EVAL
#: image evaluation: z of the FID/LPIPS pushes
IMAGE_EVAL = 424_242
#: sample grids written during training
TRAIN_GRID = 7_777
#: the grid figure of the report (absolute seed, not an offset)
FIGURE_GRID = 1234
#: the fixed noise inputs of a generation run (OTM): its "test split" for evaluation and grids
NOISE_TEST = 5_151_515
