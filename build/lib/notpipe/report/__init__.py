"""Report stage (workflow/rules/report.smk): generated LaTeX includes, booktabs tables, the latexmk build.
"""

from notpipe._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "TEX_HINT": "latex", "compile_pdf": "latex", "config_table": "latex", "paths_tex": "latex", "figures_toy": "latex", "figures_images": "latex", "figures_eval": "latex", "figures_speed": "latex",
    "tex": "tables", "num": "tables", "toy_table": "tables", "image_table": "tables",
})
