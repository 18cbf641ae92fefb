"""Packaging for hermes_min: `pip install .` gives the `hermes` command."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "hermes_min" / "__init__.py").read_text()
).group(1)

setup(
    name="hermes_min",
    version=VERSION,
    description="Stream chat-completion answers from any OpenAI-compatible endpoint to a "
    "terminal and into Telegram chats.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=[
        "hermes_min",
        "hermes_min.cli",
        "hermes_min.telegram",
        "hermes_min.tools",
        "hermes_min.transports",
    ],
    # The documented config (the repository's config.yaml): `hermes config init` writes it.
    package_data={"hermes_min": ["config_template.yaml"]},
    scripts=["bin/hermes"],
    python_requires=">=3.9",
    # urllib3 2.2+ for HTTPResponse.read1, which streams close-delimited bodies.
    install_requires=["requests>=2.28", "urllib3>=2.2", "PyYAML>=5.4"],
    extras_require={"test": ["pytest>=7", "responses>=0.23", "hypothesis>=6.70", "ruff>=0.5"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Environment :: Console",
    ],
)
