"""An independent reference of the authors' image code (test harness, not shipped).

``authors_nets``: their U-Net, conditional U-Net and ResNet_D; ``authors_loops``: their
NOT (strong, weak) and Kernel NOT (energy) training loops on a recorded tape of inputs.
Written from the authors' sources alone; nothing here imports ``notpipe``.
"""
