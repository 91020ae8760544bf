"""An independent reference of the authors' image code (test harness, not shipped).

``authors_nets``: their U-Net, conditional U-Net and ResNet_D; ``authors_loops``: their
NOT (strong, weak) and Kernel NOT (energy) training loops on a recorded tape of inputs.
``otm_nets`` / ``otm_loops``: OTM's generation and restoration networks and training loop.
Written from the authors' sources alone; nothing here imports ``notpipe``.
"""
