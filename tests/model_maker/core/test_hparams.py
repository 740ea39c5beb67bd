import pytest

from model_maker.core.hparams import HParamsError, check_keys, parse_hparams


def test_three_forms_parse_to_the_same_dict(tmp_path):
    expected = {"learning_rate": 0.1, "use_xla": True, "name": "x", "nested": {"depth": 3}}
    yaml_file = tmp_path / "h.yaml"
    yaml_file.write_text("learning_rate: 0.1\nuse_xla: true\nname: x\nnested:\n  depth: 3\n")
    assert (
        parse_hparams({"learning_rate": 0.1, "use_xla": True, "name": "x", "nested.depth": 3})
        == expected
    )
    assert parse_hparams("learning_rate=0.1,use_xla=true,name=x,nested.depth=3") == expected
    assert parse_hparams(str(yaml_file)) == expected


def test_list_values_and_empty_forms():
    assert parse_hparams("sizes=1,2,3,lr=0.5") == {"sizes": [1, 2, 3], "lr": 0.5}
    assert parse_hparams("") == {}
    assert parse_hparams(None) == {}


@pytest.mark.parametrize("bad", ["novalue", "=3", "a=1,=2"])
def test_malformed_strings_are_errors(bad):
    with pytest.raises(HParamsError, match="key=value"):
        parse_hparams(bad)


def test_yaml_path_errors(tmp_path):
    with pytest.raises(HParamsError, match="not found"):
        parse_hparams(str(tmp_path / "missing.yaml"))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(HParamsError, match="mapping"):
        parse_hparams(str(listy))


def test_check_keys_suggests_nearest():
    with pytest.raises(HParamsError, match="did you mean 'learning_rate'"):
        check_keys({"learning_rat": 1}, {"learning_rate": 0.1, "epochs": 1})
    with pytest.raises(HParamsError, match=r"hparams\.opt"):
        check_keys({"opt": {"mom": 1}}, {"opt": {"momentum": 0.9}})
    check_keys({"opt": {"momentum": 0.5}}, {"opt": {"momentum": 0.9}})
