"""benchmarks/revisions.py: the turn-taking, the worktrees it cleans up and the table (the timing
itself runs only from the command line)."""

import subprocess

import pytest

from benchmarks import revisions


def test_two_revisions_are_measured_in_turns_and_their_worktrees_removed(monkeypatch):
    calls = []

    def fake_measure(tree):
        calls.append(tree.name)
        assert (tree / "avips_jax" / "fit.py").is_file()  # a real checkout of the revision
        return {"loop_ms": 10.0 + len(calls), "step_ms": 5.0}

    monkeypatch.setattr(revisions, "measure", fake_measure)
    before = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True).stdout
    results, commits = revisions.run("HEAD", "HEAD", rounds=2)
    assert calls == ["before", "after", "before", "after"]
    assert [m["loop_ms"] for m in results["before"]] == [11.0, 13.0]
    assert commits["before"] == commits["after"] and len(commits["after"]) == 40
    after = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True).stdout
    assert after == before
    text = revisions.to_markdown(results, commits, ["--before=HEAD", "--rounds=2"])
    assert "| loop ms / step | 12.00 (11.00, 13.00) | 13.00 (12.00, 14.00) | 1.08 |" in text
    assert "`python -m benchmarks.revisions --before=HEAD --rounds=2`" in text


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        revisions.main(["--before=HEAD", "--rounds=0"])
    with pytest.raises(subprocess.CalledProcessError):
        revisions.run("no-such-revision", "HEAD", rounds=1)
