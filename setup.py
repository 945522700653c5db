"""Ships Dockerfile.agent and the dependency lock inside the wheel (sandbox/image_context/).

They stay at the top of the repository (one copy, where people look for them); the build copies
them into the package so `supervisor image build` and `supervisor gate` work from a plain
`pip install` (sandbox/images.py reads the checkout's files first, the packaged copies otherwise).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

IMAGE_FILES = {"Dockerfile.agent": "Dockerfile.agent", "agent_image/requirements.lock": "requirements.lock"}


class BuildWithImageContext(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "sandbox" / "image_context"
        target.mkdir(parents=True, exist_ok=True)
        for source, name in IMAGE_FILES.items():
            shutil.copyfile(Path(__file__).parent / source, target / name)


setup(cmdclass={"build_py": BuildWithImageContext})
