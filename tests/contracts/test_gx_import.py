"""Great Expectations imported through ``contracts.gx``: the modules it would load for unused features
wait until something reads from them, and then work as the real ones. Each test runs in a fresh
interpreter: in this one GX is long imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(code: str) -> dict[str, object]:
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_validating_a_batch_loads_none_of_the_deferred_modules() -> None:
    result = _run(
        """
import json, sys
import pandas as pd
from contracts import load_contract
from contracts.gx import DEFERRED
from contracts.validation import validate_batch
contract = load_contract("police_id_card")
frame = pd.DataFrame([{field.name: None for field in contract.fields}])
outcome = validate_batch(contract, frame)
print(json.dumps({"loaded": [name for name in DEFERRED if name in sys.modules],
                  "invalid": outcome.invalid_count}))
"""
    )
    assert result == {"loaded": [], "invalid": 1}  # validated for real (every required field missing)


@pytest.mark.slow
def test_an_expectation_that_needs_a_deferred_module_still_works() -> None:
    # KL divergence is the expectation GX imports scipy.stats and altair for.
    result = _run(
        """
import json, sys
import pandas as pd
from contracts.gx import gx, gxe
context = gx.get_context(mode="ephemeral")
batch = context.data_sources.add_pandas("s").add_dataframe_asset("a").add_batch_definition_whole_dataframe("b")
frame = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] * 20})
partition = {"bins": [0.0, 0.5, 1.0], "weights": [0.45, 0.55]}
same = batch.get_batch(batch_parameters={"dataframe": frame}).validate(
    gxe.ExpectColumnKLDivergenceToBeLessThan(column="x", partition_object=partition, threshold=0.1))
skewed = {"bins": [0.0, 0.5, 1.0], "weights": [0.99, 0.01]}
other = batch.get_batch(batch_parameters={"dataframe": frame}).validate(
    gxe.ExpectColumnKLDivergenceToBeLessThan(column="x", partition_object=skewed, threshold=0.1))
print(json.dumps({"same": same.success, "other": other.success, "stats": "scipy.stats" in sys.modules}))
"""
    )
    assert result == {"same": True, "other": False, "stats": True}


def test_a_deferred_module_is_the_real_one_once_read() -> None:
    result = _run(
        """
import json, sys
from contracts.gx import DeferredModule, deferred
assert "wave" not in sys.modules
with deferred(("wave", "not_a_module_at_all", "json")) as names:
    import wave
    stand_in = wave
after_block = sys.modules.get("wave")
reader = stand_in.Wave_read  # the first read: imports the module
print(json.dumps({"deferred": names, "stand_in": isinstance(stand_in, DeferredModule),
                  "gone_after_block": after_block is None, "reader": reader.__name__,
                  "real": sys.modules["wave"].Wave_read is reader}))
"""
    )
    assert result == {
        "deferred": ["wave"],  # not one already imported, nor one that is not installed
        "stand_in": True,
        "gone_after_block": True,
        "reader": "Wave_read",
        "real": True,
    }
