# notpipe: Neural Optimal Transport from raw data to a LaTeX report.
#   snakemake --cores 2 --configfile configs/toy.yaml   # CPU toy suite
#   snakemake --cores 8 --resources gpu=1              # paper-scale suite (config.yaml)
import os

from snakemake.utils import min_version

min_version("9.0")

# config.yaml is the default; --configfile replaces it entirely (no merging of
# experiment lists from two files).
if not config:

    configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
