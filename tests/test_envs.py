"""The conda environments in envs/: pinned, on the right channels, agreeing with pyproject.toml,
complete for what the scripts import, and named by every rule that runs code.

`--sdm conda` users and pip users must get the same versions, so an env pin outside the
pyproject range (or a package only one route installs) is a failure here, not a surprise on
someone's cluster.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ENVS = sorted((REPO / "envs").glob("*.yaml"))
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))
PACKAGE = REPO / "workflow" / "ifnsig"
CHANNELS = ["conda-forge", "bioconda", "nodefaults"]
# conda-forge names that differ from the PyPI name of the same project.
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib", "snakemake-minimal": "snakemake"}
# Import names that differ from the conda package name.
IMPORT_TO_CONDA = {
    "sklearn": "scikit-learn",
    "skmisc": "scikit-misc",
    "matplotlib": "matplotlib-base",
    "yaml": "pyyaml",
    "BTM": "btm",
    "snakemake": "snakemake-minimal",
}
# Imported directly but installed by a listed package's own requirements (anndata requires
# h5py, scikit-learn joblib and threadpoolctl, pydeseq2 formulaic), so conda brings them.
PROVIDED_BY = {
    "h5py": "anndata",
    "joblib": "scikit-learn",
    "threadpoolctl": "scikit-learn",
    "formulaic": "pydeseq2",
    "pyyaml": "snakemake-minimal",
}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<version>\d[\w.]*)$")
PIP_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>\d[\w.]*)$")
# Installers, not dependencies of the package.
TOOLS = {"pip"}


def pyproject_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = {"python": SpecifierSet(project["requires-python"])}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        requirements[requirement.name.lower()] = requirement.specifier
    return requirements


def env_pins(path: Path) -> dict[str, str]:
    """Package -> pinned version, conda packages and those of a `pip:` subsection alike."""
    spec = yaml.safe_load(path.read_text())
    pins = {}
    for dependency in spec["dependencies"]:
        if isinstance(dependency, dict):
            for line in dependency["pip"]:
                match = PIP_PIN.match(line)
                assert match, f"{path.name}: pip '{line}' is not pinned as name==version"
                pins[match["name"].lower()] = match["version"]
            continue
        match = PIN.match(str(dependency))
        assert match, f"{path.name}: '{dependency}' is not pinned as name=version"
        pins[match["name"].lower()] = match["version"]
    return pins


def rule_conda_envs() -> dict[str, Path | None]:
    """Rule name -> the env file its `conda:` names (None when it has none), per .smk file."""
    envs = {}
    for path in RULE_FILES:
        blocks = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            body = re.split(r"^\S", body, maxsplit=1, flags=re.MULTILINE)[0]
            if not re.search(r"^\s+(script|shell|run|notebook):", body, re.MULTILINE):
                continue
            found = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", body, re.MULTILINE)
            envs[name] = (path.parent / found.group(1)).resolve() if found else None
    return envs


def module_level_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Third-party packages imported when `ifnsig.<module>` is imported (following ifnsig)."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "ifnsig":
                names = [f"ifnsig.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "ifnsig":
                sub = name.split(".")[1]
                if (PACKAGE / f"{sub}.py").is_file():
                    found |= module_level_imports(sub, seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def test_there_are_envs_and_rules():
    assert len(ENVS) >= 3
    assert len(rule_conda_envs()) >= 5


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_channels_and_pins_agree_with_pyproject(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["channels"] == CHANNELS, f"{path.name}: channels must be {CHANNELS}"
    requirements = pyproject_requirements()
    for name, version in env_pins(path).items():
        if name in TOOLS:
            continue
        pypi = CONDA_TO_PYPI.get(name, name)
        assert pypi in requirements, (
            f"{path.name}: {name} is not a dependency in pyproject.toml; pip users would not get it"
        )
        assert version in requirements[pypi], (
            f"{path.name}: {name}={version} is outside pyproject.toml's {pypi}{requirements[pypi]}"
        )


def test_every_rule_that_runs_code_names_an_existing_env():
    for rule, env in rule_conda_envs().items():
        assert env is not None, f"rule {rule} has no conda: directive"
        assert env.is_file(), f"rule {rule}: conda env {env} does not exist"
        assert env.parent == (REPO / "envs").resolve(), f"rule {rule}: {env} is not in envs/"


def test_every_env_provides_what_importing_the_stages_needs():
    # Each script imports ifnsig.stages; a package missing from an env breaks every rule
    # using it under --sdm conda, at import time.
    needed = {IMPORT_TO_CONDA.get(m, m).lower() for m in module_level_imports("stages")}
    needed.add("snakemake-minimal")  # the `snakemake` object handed to scripts
    for env in sorted(set(rule_conda_envs().values())):
        listed = set(env_pins(env))
        missing = {n for n in needed - listed if PROVIDED_BY.get(n) not in listed}
        assert not missing, f"{env.name} lacks {sorted(missing)}, which ifnsig.stages imports"


def test_readme_documents_both_routes():
    readme = (REPO / "README.md").read_text()
    assert "--sdm conda" in readme
    assert "pip install -e ." in readme
