"""The lm backend (SmolLM2-135M from its GGUF) end to end on a very small toy set."""

from __future__ import annotations

import numpy as np
import pytest

from helpseek_text import HeadConfig, load_text_model, save_text_model, train_text_model
from helpseek_text.toy import door_is_open, toy_task


@pytest.fixture(scope="module")
def trained(lm_config, lm_encoder):
    rng = np.random.default_rng(0)
    task = toy_task(rng, n_train=48, n_test=20, cmax=1)
    scorer = train_text_model(
        lm_config,
        rng,
        prm=task.train_prm,
        helper=task.train_helper,
        head=HeadConfig(epochs=200),
        cmax=1,
        horizon=30,
        encoder=lm_encoder,
    )
    return task, scorer


def test_lm_features_do_not_depend_on_the_batch(lm_encoder):
    texts = ["The door is open.", "A much longer observation: the agent sees a red key and a box."]
    together = lm_encoder.encode(texts)
    alone = np.concatenate([lm_encoder.encode([t]) for t in texts])
    assert together.shape == (2, 576)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_lm_prm_and_helper_beat_chance(trained):
    task, scorer = trained
    texts = list(task.test_prm.texts)
    both = scorer.score(texts)
    acc = np.mean((both[:, 0] > 0.5) == door_is_open(texts))
    assert acc >= 0.7, acc  # chance 0.5; held-out colours, rooms and objects
    locked = door_is_open(texts) == 0
    assert np.mean(both[locked, 1] - both[locked, 0]) >= 0.2
    ex = task.test_helper
    p = scorer.decide_prob(list(ex.texts), ex.remaining, ex.steps_left)
    assert np.mean((p > 0.5) == ex.labels) >= 0.7


def test_lm_save_load_round_trip(trained, tmp_path, lm_encoder):
    task, scorer = trained
    save_text_model(tmp_path, scorer)
    # heads and config come back from disk; the loaded encoder is reused (a second SmolLM2
    # load costs ~15 s; the embed test covers the full load path)
    loaded = load_text_model(tmp_path, encoder=lm_encoder)
    assert loaded.config.backend == "lm"
    texts = list(task.test_prm.texts[:8])
    np.testing.assert_array_equal(loaded.score(texts), scorer.score(texts))
    ex = task.test_helper
    np.testing.assert_array_equal(
        loaded.decide_prob(list(ex.texts[:8]), ex.remaining[:8], ex.steps_left[:8]),
        scorer.decide_prob(list(ex.texts[:8]), ex.remaining[:8], ex.steps_left[:8]),
    )
