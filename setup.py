"""The one thing pyproject.toml cannot say: install ``equiscope_metatrain.pth`` at the
top of site-packages (for regular and editable installs alike), so that plain ``mtt``
finds the ``experimental.equiscope`` architecture. See
plugins/equiscope_metatrain/_register.py for what the file does at start-up."""

import os
import sys
import sysconfig

from setuptools import setup
from setuptools.command.editable_wheel import editable_wheel

PTH = "plugins/equiscope_metatrain/equiscope_metatrain.pth"
# data files are installed relative to the environment's prefix: site-packages there
SITE_PACKAGES = os.path.relpath(sysconfig.get_paths()["purelib"], sys.prefix)


class EditableWheelWithData(editable_wheel):
    """setuptools' editable wheels skip data files (it asks ``has_data()``, which does
    not exist, instead of ``has_data_files()``); install them as a regular wheel does."""

    def _run_install(self, category):
        if category == "data" and self.distribution.has_data_files():
            self.run_command("install_data")
        else:
            super()._run_install(category)


setup(data_files=[(SITE_PACKAGES, [PTH])], cmdclass={"editable_wheel": EditableWheelWithData})
