"""Acceptance 5: Team-Draft Interleaving on SciFact with scripted users (tests/click_model.py, a stand-in for
people): a better config (hybrid) against a worse one (MiniLM cut to 16 Matryoshka dimensions) is detected at
p <= 0.05; the champion against itself (A/A) is not."""

from __future__ import annotations

import pytest
from click_model import CascadeUser, simulate
from serve_helpers import DENSE16, HYBRID, InProcessServer, post, scifact_serve_folder, seed_workspace_cache

from evolve.serve import team_draft

pytestmark = pytest.mark.slow

USERS = [CascadeUser(f"user-{i}", seed=7) for i in range(3)]


def test_team_draft_takes_turns_and_never_repeats():
    a, b = ["a1", "s1", "a2", "a3", "s2"], ["b1", "s1", "b2", "s2", "b3"]
    merged, teams = team_draft(a, b, 6, "query-1")
    assert len(merged) == len(set(merged)) == 6
    assert set(teams.values()) == {"champion", "challenger"}
    counts = [list(teams.values())[: i + 1].count("champion") for i in range(6)]
    assert all(abs(2 * c - (i + 1)) <= 1 for i, c in enumerate(counts))  # never more than one pick ahead
    assert team_draft(a, b, 6, "query-1") == (merged, teams)  # seeded by the query id
    champion_docs = [d for d in merged if teams[d] == "champion"]
    assert champion_docs == [d for d in a if d in champion_docs]  # each side's picks keep its own order
    merged, teams = team_draft(["x"], ["y", "z", "w"], 4, "q")
    assert merged[:2] in (["x", "y"], ["y", "x"]) and len(merged) == 4  # one list runs out: the other fills


@pytest.fixture(scope="module")
def scifact_folder(tmp_path_factory):
    return scifact_serve_folder(tmp_path_factory)


def _run(tmp_path, folder, cache_file, train, champion: str, challenger: str, seed: int):
    from evolve.config import load_config
    from evolve.datasets import load_dataset
    from evolve.feedback import interleaving_results

    ws = tmp_path / "ws"
    seed_workspace_cache(ws, cache_file)
    (ws / "champion.yaml").write_text(champion, encoding="utf-8")
    (tmp_path / "challenger.yaml").write_text(challenger, encoding="utf-8")
    ds = load_dataset(folder)
    queries = {q: ds.queries[q] for q in train}
    with InProcessServer(ws, folder, challenger=load_config(tmp_path / "challenger.yaml"), query_id_seed=seed) as srv:
        sim = simulate(post, srv.url, queries, ds.qrels["train"], USERS)
        [res] = interleaving_results(srv.store.queries(), srv.store.events())
    assert sim["searches"] == len(queries) * len(USERS)
    return res


def test_interleaving_detects_the_better_config(tmp_path, scifact_folder):
    folder, cache_file, train = scifact_folder
    # champion: the weak 16-dim dense config; challenger: hybrid. The challenger must win.
    res = _run(tmp_path, folder, cache_file, train, DENSE16, HYBRID, seed=1)
    assert res.preferences >= 30
    assert res.wins > res.losses and res.p_value <= 0.05, res.as_dict()


def test_aa_interleaving_stays_non_significant(tmp_path, scifact_folder):
    folder, cache_file, train = scifact_folder
    res = _run(tmp_path, folder, cache_file, train, HYBRID, HYBRID, seed=2)
    assert res.champion_fingerprint == res.challenger_fingerprint
    assert res.preferences > 0 and res.p_value > 0.05, res.as_dict()
