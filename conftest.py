"""The repository's own pytest configuration.

quantscreen's plugin (options, checkpoint fixtures, reporter, hooks) is installed with the package and loaded through
its pytest11 entry point (`quantscreen.fixtures.plugin`), in this repository as in any other; scripts/_venv.sh
installs the repository in editable mode. With plugin autoloading turned off, this file loads it instead.
"""
import os

if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
    pytest_plugins = ["quantscreen.fixtures.plugin"]
