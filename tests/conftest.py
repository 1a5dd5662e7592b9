"""Shared fixtures: paths of the reference data copied from the originals."""
import os

import pytest

DATA = os.path.join(os.path.dirname(__file__), "data")
AMP_REFERENCE = os.path.join(DATA, "amp-reference")
GDML_REFERENCE = os.path.join(DATA, "gdml-reference")


@pytest.fixture
def amp_reference():
    """Folder of the Amp 1.0.1 reference data."""
    return AMP_REFERENCE


@pytest.fixture
def gdml_reference():
    """Folder of the sgdml 1.0.3 reference data."""
    return GDML_REFERENCE
