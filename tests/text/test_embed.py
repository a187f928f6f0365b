"""The embed backend end to end: train on the toy task, beat chance held out, save/load."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from helpseek_text import (
    HeadConfig,
    TextInputError,
    TextModelConfig,
    TextModelFormatError,
    load_text_model,
    save_text_model,
    train_text_model,
)
from helpseek_text.store import TEXT_HELPER_FILE, TEXT_MODEL_FILE, TEXT_PRM_FILE
from helpseek_text.toy import door_is_open, toy_task


@pytest.fixture(scope="module")
def trained(embed_config, embed_encoder):
    rng = np.random.default_rng(0)
    task = toy_task(rng, n_train=160, n_test=80, cmax=2)
    scorer = train_text_model(
        embed_config,
        rng,
        prm=task.train_prm,
        helper=task.train_helper,
        head=HeadConfig(epochs=150),
        cmax=2,
        horizon=30,
        encoder=embed_encoder,
    )
    return task, scorer


def test_prm_beats_chance_on_held_out_words(trained):
    task, scorer = trained
    texts = list(task.test_prm.texts)
    both = scorer.score(texts)
    assert both.shape == (len(texts), 2)
    assert np.all((both >= 0) & (both <= 1))
    # proceeding succeeds iff the door is open: chance is 0.5 on these held-out words
    acc = np.mean((both[:, 0] > 0.5) == door_is_open(texts))
    assert acc >= 0.75, acc
    # asking for help always succeeds in the toy task: behind a locked door it must help
    locked = door_is_open(texts) == 0
    assert np.mean(both[locked, 1] - both[locked, 0]) >= 0.3
    chosen = scorer.score(texts, task.test_prm.actions)
    np.testing.assert_allclose(chosen, both[np.arange(len(texts)), task.test_prm.actions])


def test_helper_beats_majority_on_held_out_words(trained):
    task, scorer = trained
    ex = task.test_helper
    p = scorer.decide_prob(list(ex.texts), ex.remaining, ex.steps_left)
    acc = np.mean((p > 0.5) == ex.labels)
    majority = max(ex.labels.mean(), 1 - ex.labels.mean())
    assert acc >= max(0.8, majority + 0.1), (acc, majority)
    decisions = scorer.decide(list(ex.texts[:4]), np.zeros(4, int), ex.steps_left[:4])
    assert [d.reason for d in decisions] == ["budget_exhausted"] * 4
    assert not any(d.intervene for d in decisions)


def test_budget_is_written_into_the_prompt(trained):
    _, scorer = trained
    assert scorer.helper_texts(["A state."], [2], [7]) == [
        "A state.\nRemaining help budget: 2. Steps left: 7."
    ]


def test_save_load_round_trip_is_identical_and_offline(trained, tmp_path, monkeypatch):
    task, scorer = trained
    files = save_text_model(tmp_path, scorer)
    assert set(files) == {TEXT_MODEL_FILE, TEXT_PRM_FILE, TEXT_HELPER_FILE}
    assert all(p.is_file() and p.parent == tmp_path for p in files.values())

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access while loading: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    loaded = load_text_model(tmp_path)  # builds a fresh MiniLM encoder from the package
    texts = list(task.test_prm.texts[:20])
    np.testing.assert_array_equal(loaded.score(texts), scorer.score(texts))
    ex = task.test_helper
    np.testing.assert_array_equal(
        loaded.decide_prob(list(ex.texts[:20]), ex.remaining[:20], ex.steps_left[:20]),
        scorer.decide_prob(list(ex.texts[:20]), ex.remaining[:20], ex.steps_left[:20]),
    )


def test_load_refuses_another_encoder_family(trained, tmp_path, lm_config):
    _, scorer = trained
    save_text_model(tmp_path, scorer)
    with pytest.raises(TextModelFormatError, match="trained on the 'minilm' encoder; backend 'lm'"):
        load_text_model(tmp_path, lm_config)


def test_load_names_a_missing_head_file(trained, tmp_path):
    _, scorer = trained
    save_text_model(tmp_path, scorer)
    (tmp_path / TEXT_PRM_FILE).unlink()
    with pytest.raises(TextModelFormatError, match=r"text_prm\.npz: head file is missing"):
        load_text_model(tmp_path)


def test_bad_inputs_are_named_errors(trained):
    _, scorer = trained
    with pytest.raises(TextInputError, match="expected a list of strings"):
        scorer.score("one string")
    with pytest.raises(TextInputError, match=r"texts\[1\]: must be a non-empty string"):
        scorer.score(["ok", "  "])
    with pytest.raises(TextInputError, match="remaining: values must be >= 0"):
        scorer.decide_prob(["ok"], [-1], [3])
    with pytest.raises(TextInputError, match="actions: must be 0"):
        scorer.score(["ok"], [2])
    with pytest.raises(TextModelFormatError, match="backend 'gpt'"):
        TextModelConfig(backend="gpt")  # type: ignore[arg-type]
