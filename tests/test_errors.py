"""core/errors.py: one exception base for the product; every stage's error is one of it."""
import pickle

import pytest

from core.errors import HyperFaceError, ModelError


def test_message_with_and_without_a_file():
    assert str(HyperFaceError("/data/x.csv", "bad row 3")) == "/data/x.csv: bad row 3"
    e = HyperFaceError("no face box can be fitted")
    assert str(e) == "no face box can be fitted" and e.path == "" and e.problem == "no face box can be fitted"


def test_every_stage_error_is_a_hyperface_error_and_survives_pickling():
    from benchmarks.errors import BenchmarkDataError
    from benchmarks.gt_box_eval import HeldoutError
    from data_prep.errors import DataPrepError
    from pipeline.errors import BadImageError, GeometryError, PipelineError
    from prototxt.net_surgery import SurgeryError
    from prototxt.netspec_utils import PrototxtError

    for cls in (BenchmarkDataError, HeldoutError, DataPrepError, PipelineError, BadImageError, ModelError,
                GeometryError, SurgeryError, PrototxtError):
        err = cls("/x/y", "broken")
        assert isinstance(err, HyperFaceError) and str(err) == "/x/y: broken"
        back = pickle.loads(pickle.dumps(err))            # data_prep's worker processes send them back
        assert type(back) is cls and str(back) == "/x/y: broken"
    assert isinstance(GeometryError("x"), ValueError) and isinstance(PrototxtError("x"), ValueError)


def test_a_data_prep_error_reaches_the_benchmark_cli_untranslated(tmp_path, caplog):
    """`python -m benchmarks aflw` reads aflw_crops with data_prep's reader; its error is printed as is."""
    from benchmarks.cli import main

    assert main(["aflw", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--model", str(tmp_path)]) == 2
    msgs = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert msgs == [f"{tmp_path / 'annotations.csv'}: annotations file not found"]


def test_model_error_is_raised_by_core_model_io(tmp_path):
    from core.model_store import load_model

    with pytest.raises(ModelError, match="model directory not found"):
        load_model(tmp_path / "nope")
