"""Installs the repository's top-level cli.py as the module bbans.cli (everything else is
in pyproject.toml). setuptools maps packages to folders, not a module to another place,
so pyproject.toml names bbans.cli as a package at "cli" (the path without its suffix,
which is how an editable install finds a module) and the build below installs cli.py
as bbans/cli.py instead of looking for such a folder."""
from setuptools import setup
from setuptools.command.build_py import build_py

PACKAGE, MODULE, SOURCE = "bbans", "cli", "cli.py"


class BuildPy(build_py):
    def finalize_options(self):
        super().finalize_options()
        self.packages = [p for p in self.packages if p != f"{PACKAGE}.{MODULE}"]

    def run(self):
        super().run()
        if not self.editable_mode:
            self.build_module(MODULE, SOURCE, PACKAGE)

    def find_all_modules(self):
        return super().find_all_modules() + [(PACKAGE, MODULE, SOURCE)]


setup(cmdclass={"build_py": BuildPy})
