"""Config overrides: checked names and types, presets, save/load round trip."""

import json

import pytest

from selfsup.config import apply_overrides, load_config, save_config
from selfsup.errors import UserError
from selfsup.recipes.text import PRESETS, PretrainConfig


def test_overrides_parse_types():
    cfg = apply_overrides(
        PretrainConfig(),
        [
            "model.num_layers=3",
            "train.lr=3e-4",
            "masking.whole_word=true",
            "objectives=mlm,sop",
            "tokenizer.vocab_file=none",
            "train.steps=1e3",
            "model.norm_position=pre",
        ],
    )
    assert cfg.model.num_layers == 3 and cfg.train.lr == 3e-4 and cfg.masking.whole_word is True
    assert cfg.objectives == ["mlm", "sop"] and cfg.tokenizer.vocab_file is None
    assert cfg.train.steps == 1000 and cfg.model.norm_position == "pre"


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.num_layer=3", "unknown config key 'model.num_layer'"),
        ("nosuch=1", "unknown config key"),
        ("model=3", "unknown config key"),
        ("model.num_layers=three", "cannot read 'three' as int"),
        ("model.norm_position=middle", "one of post|pre"),
        ("train.lr", "expected key=value"),
        ("masking.whole_word=maybe", "as bool"),
    ],
)
def test_bad_overrides_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(PretrainConfig(), [override])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_round_trip(name, tmp_path):
    cfg = PRESETS[name]()
    cfg.validate()
    save_config(cfg, tmp_path / "config.json")
    assert load_config(PretrainConfig, tmp_path / "config.json") == cfg


def test_unknown_key_in_saved_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model": {"hidden": 3}}')
    with pytest.raises(UserError, match="hidden"):
        load_config(PretrainConfig, path)


def test_seq_len_longer_than_positions():
    cfg = apply_overrides(PretrainConfig(), ["data.max_seq_len=512"])
    with pytest.raises(UserError, match="position table"):
        cfg.validate()


def test_resuming_under_other_settings_is_refused_but_length_may_change(tmp_path):
    from selfsup.config import save_run_config
    from selfsup.recipes.text import preset_tiny

    path = tmp_path / "config.json"
    cfg = preset_tiny()
    save_run_config(cfg, path, resume=False)
    cfg.train.steps, cfg.train.threads = 500, 1  # longer, other speed: allowed
    save_run_config(cfg, path, resume=True)
    cfg.masking.rate = 0.3
    with pytest.raises(
        UserError, match=r"cannot resume with other settings \(masking.rate: 0.4 -> 0.3\)"
    ):
        save_run_config(cfg, path, resume=True)
    save_run_config(cfg, path, resume=False)  # a fresh run overwrites
    saved = json.loads(path.read_text())
    del saved["masking"]["rate"]  # a file written before an option existed: not compared
    path.write_text(json.dumps(saved))
    cfg.masking.rate = 0.5
    save_run_config(cfg, path, resume=True)
