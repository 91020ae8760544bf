# notpipe: Neural Optimal Transport from raw data to a LaTeX report.
#   snakemake --cores 2 --configfile configs/toy.yaml   # CPU toy suite
#   snakemake --cores 8 --resources gpu=1              # paper-scale suite (config.yaml)
import os

from snakemake.utils import min_version

min_version("9.0")

# A second run in a working directory while another works there is refused with one line
# before it builds its DAG; dry runs, --unlock, --summary etc. and job processes are not.
from notpipe.workflow_lock import guard_runs

guard_runs(workflow)

# config.yaml is the default; --configfile replaces it entirely (no merging of
# experiment lists from two files). Read by notpipe rather than `configfile:`, so that a
# YAML syntax error names the file and the line (Snakemake says only "not valid JSON or
# YAML"); it is listed in workflow.configfiles as `configfile:` does (report, archives).
if not config:
    from notpipe.config import ConfigError, read_yaml

    _default_config = os.path.join(workflow.basedir, "config.yaml")
    try:
        _data = read_yaml(_default_config)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None
    except OSError as err:
        raise WorkflowError(f"cannot read {_default_config}: {err.strerror}") from None
    if not isinstance(_data, dict):
        raise WorkflowError(f"{_default_config}: the config must be a mapping of keys at top level")
    config.update(_data)
    workflow.configfiles.append(_default_config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/report.smk"


# Run by Snakemake itself, on the submitting host, never as cluster jobs (profiles/slurm):
# downloads need the network compute nodes often lack; summaries, tables, figures and the
# report take seconds. Everything else (data_prepare, toy_train/evaluate, train, eval_*) is
# submitted.
localrules:
    all,
    data_download,
    toy_summary,
    toy_sweep_table,
    eval_curve,
    eval_summary,
    toy_figure_scatter,
    toy_figure_transport,
    toy_figure_one_to_many,
    toy_figure_losses,
    toy_figure_gamma_sweep,
    toy_figure_l2_uvp_dim,
    image_figure_grid,
    image_figure_losses,
    image_figure_fid_curve,
    image_figure_tradeoff,
    image_figure_throughput,
    report_table_toy,
    report_table_images,
    report_table_environment,
    report_includes,
    report,


rule all:
    input:
        all_outputs(),
    default_target: True
