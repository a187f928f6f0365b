import json
import re

import numpy as np
import pytest

from helpseek_core.artifact import (
    ARTIFACT_SCHEMA_VERSION,
    MANIFEST_NAME,
    load_artifact,
    sha256_file,
    write_artifact,
)
from helpseek_core.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactMissingError,
    ArtifactSchemaError,
)


def manifest(dim=3):
    return {
        "artifact_id": "test-0001",
        "created_at": "2026-11-01T00:00:00Z",
        "kind": "features",
        "feature_schema": {"names": [f"f{i}" for i in range(dim)], "dim": dim},
        "cmax": 5,
        "horizon": 25,
        "k": 1,
        "cost": 1,
        "config": {"seed": np.int64(3), "lr": 1e-3},
    }


ARRAYS = {"helper.npz": {"W0": np.arange(6, dtype=np.float32).reshape(3, 2), "b0": np.ones(2)}}


@pytest.fixture
def art(tmp_path):
    return write_artifact(tmp_path / "art", manifest(), ARRAYS)


def edit_manifest(path, **changes):
    m = json.loads((path / MANIFEST_NAME).read_text())
    m.update(changes)
    (path / MANIFEST_NAME).write_text(json.dumps(m))


def test_round_trip(art):
    loaded = load_artifact(art, expected_feature_dim=3)
    assert (
        loaded.artifact_id == "test-0001" and loaded.kind == "features" and loaded.feature_dim == 3
    )
    assert loaded.manifest["schema_version"] == ARTIFACT_SCHEMA_VERSION
    assert loaded.manifest["config"] == {"seed": 3, "lr": 1e-3}
    assert loaded.manifest["files"] == {"helper.npz": sha256_file(art / "helper.npz")}
    for k, v in ARRAYS["helper.npz"].items():
        np.testing.assert_array_equal(loaded.arrays["helper.npz"][k], v)
    assert loaded.file("helper.npz") == art / "helper.npz"
    with pytest.raises(ArtifactMissingError, match="not listed in the manifest"):
        loaded.file("other.npz")
    assert not list(art.glob(".manifest.*"))  # no temp file left behind


def test_extra_file_is_hashed_and_checked(tmp_path):
    out = tmp_path / "art"
    out.mkdir()
    (out / "tokenizer.json").write_text("{}")
    write_artifact(out, manifest(), ARRAYS, extra_files={"tokenizer.json": out / "tokenizer.json"})
    (out / "tokenizer.json").write_text('{"x": 1}')
    with pytest.raises(ArtifactIntegrityError, match=r"tokenizer\.json: sha256"):
        load_artifact(out)


def test_tampered_file_refused_naming_file_and_sha256(art):
    data = bytearray((art / "helper.npz").read_bytes())
    data[-1] ^= 0xFF
    (art / "helper.npz").write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError) as exc:
        load_artifact(art)
    msg = str(exc.value)
    assert str(art / "helper.npz") in msg and "sha256" in msg
    assert re.search(
        r"sha256 [0-9a-f]{12}\.\.\. does not match the manifest's [0-9a-f]{12}\.\.\.", msg
    )


def test_missing_pieces(tmp_path, art):
    with pytest.raises(ArtifactMissingError, match="artifact directory does not exist"):
        load_artifact(tmp_path / "nope")
    (art / "helper.npz").unlink()
    with pytest.raises(
        ArtifactMissingError, match=r"helper\.npz: listed in the manifest but missing"
    ):
        load_artifact(art)
    (art / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactMissingError, match=r"manifest\.json: manifest\.json is missing"):
        load_artifact(art)


def test_wrong_schema_version(art):
    edit_manifest(art, schema_version=99)
    with pytest.raises(ArtifactSchemaError, match="schema_version 99 is not supported"):
        load_artifact(art)


def test_bad_json(art):
    (art / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ArtifactSchemaError, match=r"manifest\.json: not valid JSON"):
        load_artifact(art)
    (art / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(ArtifactSchemaError, match="must be a JSON object"):
        load_artifact(art)


def test_feature_dim_mismatch_and_schema(art):
    with pytest.raises(ArtifactSchemaError, match="feature dimension 3 != expected 4"):
        load_artifact(art, expected_feature_dim=4)
    edit_manifest(art, feature_schema={"names": ["a"], "dim": 3})
    with pytest.raises(ArtifactSchemaError, match="feature_schema has 1 names but dim 3"):
        load_artifact(art)


def test_missing_key_and_bad_names_on_write(tmp_path, art):
    m = json.loads((art / MANIFEST_NAME).read_text())
    del m["cmax"]
    (art / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(ArtifactSchemaError, match=r"manifest lacks keys \['cmax'\]"):
        load_artifact(art)
    bad = manifest()
    del bad["horizon"]
    with pytest.raises(ArtifactSchemaError, match=r"lacks keys \['horizon'\]"):
        write_artifact(tmp_path / "w", bad, ARRAYS)
    with pytest.raises(ArtifactSchemaError, match="plain '<name>.npz'"):
        write_artifact(tmp_path / "w2", manifest(), {"sub/x.npz": {"a": np.zeros(1)}})
    assert issubclass(ArtifactSchemaError, ArtifactError)


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "sub/../../x.npz"])
def test_file_names_confined_to_the_artifact(art, name):
    """Issue 13 row 11: a manifest listing a path outside the directory is refused, naming the
    manifest, the name and the reason, before the file is read or hashed."""
    m = json.loads((art / MANIFEST_NAME).read_text())
    m["files"][name] = "0" * 64
    (art / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(ArtifactSchemaError) as info:
        load_artifact(art)
    msg = str(info.value)
    assert str(art / MANIFEST_NAME) in msg and repr(name) in msg and "escapes" in msg
    assert "sha256" not in msg  # never got as far as hashing it


def test_symlink_out_of_the_artifact_refused(tmp_path, art):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (art / "link.txt").symlink_to(outside)
    m = json.loads((art / MANIFEST_NAME).read_text())
    m["files"]["link.txt"] = sha256_file(outside)
    (art / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(ArtifactSchemaError, match="'link.txt' resolves outside"):
        load_artifact(art)
    with pytest.raises(ArtifactSchemaError, match="escapes the artifact directory"):
        write_artifact(tmp_path / "w", manifest(), ARRAYS, extra_files={"../x": outside})


def test_budget_range_written_and_checked(tmp_path, art):
    """Issue 10 item 2: the manifest states the budgets the helper was trained on."""
    loaded = load_artifact(art)
    assert loaded.manifest["budget_range"] == [1, 5] and loaded.budget_range == (1, 5)
    for bad, why in (([1], "must be \\[low, high\\]"), ([3, 2], "must be"), ([1, 4], "!= cmax 5")):
        edit_manifest(art, budget_range=bad)
        with pytest.raises(ArtifactSchemaError, match=why):
            load_artifact(art)
    edit_manifest(art, budget_range=None)  # an artifact written before the field: derived
    assert load_artifact(art).budget_range == (1, 5)
