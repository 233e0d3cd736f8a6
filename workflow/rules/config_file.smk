# Reads before Snakemake does: a syntax error in config/config.yaml is reported with its
# file, line and column (Snakemake's own message names neither).
import sys

sys.path.insert(0, str(WORKFLOW_DIR / "workflow"))

from ifnsig.config_files import DEFAULT_CONFIG_FILE, check_yaml_syntax
from ifnsig.errors import InputError

try:
    check_yaml_syntax(DEFAULT_CONFIG_FILE)
except InputError as err:
    sys.exit(f"Input error: {err}")
