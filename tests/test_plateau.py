"""benchmarks/plateau.py: iterations behind a proposal net, recall read back, one-line errors."""
import json

from benchmarks.plateau import chain_iterations, main, recall_at_05


def test_chain_iterations_adds_every_earlier_piece():
    meta = {"iterations": 800, "earlier_pieces": [{"iterations": 4500}, {"iterations": 3800}, {"iterations": 1800}]}
    assert chain_iterations(meta) == 800 + 4500 + 3800 + 1800
    assert chain_iterations({"iterations": 5500}) == 5500   # a first piece has no earlier_pieces


def test_recall_is_read_from_the_proposal_benchmark(tmp_path):
    (tmp_path / "recall.json").write_text(json.dumps({"summary": {"SSD net": {"recall 0.5 (all)": 285 / 299}}}))
    assert recall_at_05(tmp_path) == 285 / 299


def test_a_missing_model_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "recall.json").write_text(json.dumps({"summary": {"SSD net": {"recall 0.5 (all)": 0.9}}}))
    code = main(["--net", f"seventh={tmp_path / 'no_model'}:{tmp_path}:{tmp_path}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {tmp_path / 'no_model' / 'model.json'}: not found\n"
    assert main(["--net", "seventh=only_one_dir", "--out", str(tmp_path / "out")]) == 2
    assert "expected LABEL=DIR:DIR:DIR" in capsys.readouterr().err


def test_a_model_without_its_threshold_choice_is_refused(tmp_path, capsys):
    """The held-out subset that chose nothing starts after the photos recorded in model.json."""
    (tmp_path / "recall.json").write_text(json.dumps({"summary": {"SSD net": {"recall 0.5 (all)": 0.9}}}))
    (tmp_path / "m" / "proposals").mkdir(parents=True)
    (tmp_path / "m" / "model.json").write_text(json.dumps({"detection_threshold": 0.9, "box_style": [0, 0, 1, 1]}))
    (tmp_path / "m" / "proposals" / "model.json").write_text(json.dumps({"meta": {"iterations": 10}}))
    assert main(["--net", f"x={tmp_path / 'm'}:{tmp_path}:{tmp_path}", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'm' / 'model.json'}: no detection_threshold_chosen.images "
                                       "(run make calibrate-threshold CAL_LIMIT=30)\n")
