"""Issue 2: chunkers respect size (MiniLM tokens) and overlap, are deterministic; English sentences via sentencex,
Korean sentences via kiwipiepy."""

from __future__ import annotations

import pytest

from evolve.chunking import (
    Chunk,
    chunk_corpus,
    create_chunker,
    load_tokenizer,
    split_sentences,
)
from evolve.config import ChunkingConfig
from evolve.datasets import Document

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def tok():
    t = load_tokenizer(MODEL)
    assert t._tok is not None, "MiniLM's tokenizer.json must be used, not whitespace tokens"
    return t


@pytest.fixture(scope="module")
def docs(scifact):
    """The 60 longest SciFact abstracts (long enough to need several chunks at every size tried)."""
    return sorted(scifact.corpus.values(), key=lambda d: (-len(d.full_text), d.id))[:60]


def chunker(strategy, size=256, overlap=0):
    return create_chunker(ChunkingConfig(strategy=strategy, size=size, overlap=overlap), MODEL)


def test_tokenizer_is_minilm_wordpiece(tok):
    assert tok.count("Hello world") == 2
    assert tok.count("unbelievably") > 1  # word pieces
    assert tok.offsets("ab cd") == [(0, 2), (3, 5)]


def test_none_keeps_whole_documents(docs):
    ch = chunker("none")
    for d in docs[:20]:
        assert ch.chunk(d) == [Chunk(d.id, 0, d.full_text)]
    assert chunker("none").tokenizer._tok is None  # no tokenizer is loaded for whole documents


@pytest.mark.parametrize("strategy", ["tokens", "sentences", "recursive"])
@pytest.mark.parametrize(("size", "overlap"), [(32, 16), (64, 0), (128, 32), (100, 50), (16, 12)])
def test_chunks_respect_size(strategy, size, overlap, docs, tok):
    ch = chunker(strategy, size, overlap)
    n_multi = 0
    for d in docs:
        chunks = ch.chunk(d)
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert all(c.doc_id == d.id and c.text.strip() == c.text and c.text for c in chunks)
        counts = [tok.count(c.text) for c in chunks]
        assert max(counts) <= size, (strategy, size, overlap, d.id, counts)
        n_multi += len(chunks) > 1
    assert n_multi == len(docs)  # every one of these long abstracts was split


def _shared(a: str, b: str) -> str:
    """The longest suffix of ``a`` that is a prefix of ``b``."""
    for k in range(min(len(a), len(b)), 0, -1):
        if a[-k:] == b[:k]:
            return a[-k:]
    return ""


def test_token_windows_overlap(docs, tok):
    size, overlap = 64, 16
    ch = chunker("tokens", size, overlap)
    for d in docs[:30]:
        texts = [c.text for c in ch.chunk(d)]
        assert len(texts) >= 2
        for a, b in zip(texts, texts[1:]):
            # consecutive windows share `overlap` tokens (one or two fewer where a window was cut inside a word)
            assert overlap - 2 <= tok.count(_shared(a, b).strip()) <= overlap + 2
        # windows cover the whole text
        assert d.full_text.startswith(texts[0])
        assert d.full_text.rstrip().endswith(texts[-1])


def test_token_windows_without_overlap_partition_the_text(docs, tok):
    ch = chunker("tokens", 48, 0)
    for d in docs[:30]:
        texts = [c.text for c in ch.chunk(d)]
        joined_tokens = sum(tok.count(t) for t in texts)
        # no token lost or repeated (a window cut inside a word may re-tokenize one piece differently)
        assert abs(joined_tokens - tok.count(d.full_text)) <= 2 * len(texts)
        assert "".join(texts).replace(" ", "") == d.full_text.replace(" ", "").strip()


def test_sentence_overlap_carries_whole_sentences():
    text = " ".join(f"Sentence number {i} has exactly some words in it." for i in range(12))
    sents = split_sentences(text)
    assert len(sents) == 12
    tok = load_tokenizer(MODEL)
    per = tok.count(sents[0])
    ch = chunker("sentences", size=3 * per, overlap=per)
    chunks = [c.text for c in ch.chunk(Document("x", "", text))]
    # 3 sentences per chunk, the last sentence of each chunk starts the next one
    assert chunks[0] == " ".join(sents[0:3])
    assert chunks[1] == " ".join(sents[2:5])
    for a, b in zip(chunks, chunks[1:]):
        assert b.startswith(split_sentences(a)[-1])
    no_overlap = [c.text for c in chunker("sentences", size=3 * per, overlap=0).chunk(Document("x", "", text))]
    assert no_overlap == [" ".join(sents[i:i + 3]) for i in range(0, 12, 3)]


def test_recursive_prefers_paragraphs():
    paras = ["First paragraph is short.", "Second paragraph. It has two sentences.", "Third one."]  # 5, 8, 3 tokens
    doc = Document("p", "", "\n\n".join(paras))
    assert [c.text for c in chunker("recursive", size=16).chunk(doc)] == [" ".join(paras)]
    # paragraphs that fit are packed whole; a paragraph too long is split into sentences, a too-long sentence
    # into token windows
    doc = Document("p", "", "Para one has words. And more words here.\n\nA second paragraph with a very long sentence "
                   "that goes on and on well past the limit of sixteen tokens for sure.")
    assert [c.text for c in chunker("recursive", size=16).chunk(doc)] == [
        "Para one has words. And more words here.",
        "A second paragraph with a very long sentence that goes on and on well past the",
        "limit of sixteen tokens for sure.",
    ]


@pytest.mark.parametrize("strategy", ["none", "tokens", "sentences", "recursive"])
def test_deterministic(strategy, docs):
    cfg = ChunkingConfig(strategy=strategy, size=64, overlap=8)
    corpus = {d.id: d for d in docs[:40]}
    a = chunk_corpus(corpus, cfg, MODEL)
    b = chunk_corpus(corpus, cfg, MODEL)
    assert a == b
    # a fresh chunker (no shared state) gives the same chunks, in corpus order
    c = [ch for d in corpus.values() for ch in create_chunker(cfg, MODEL).chunk(d)]
    assert a == c
    assert [x.doc_id for x in a] == sorted([x.doc_id for x in a], key=list(corpus).index)


def test_short_document_is_one_chunk():
    doc = Document("s", "Title", "Short text.")
    for strategy in ("tokens", "sentences", "recursive"):
        assert chunker(strategy, 64, 8).chunk(doc) == [Chunk("s", 0, "Title Short text.")]


def test_english_sentence_split():
    assert split_sentences("It works. Does it? Yes! e.g. not here. 3 cases.") == [
        "It works.", "Does it?", "Yes!", "e.g. not here.", "3 cases."
    ]
    assert split_sentences("") == [] and split_sentences("no punctuation at all") == ["no punctuation at all"]


def test_english_abbreviations_do_not_end_a_sentence():
    """Issue 14.11: the old punctuation rule cut after "Fig.", "et al." and "Dr." (before a capital, a digit
    or a bracket): ['As shown in Fig.', '3 of Smith et al.', '(2019), the effect holds.', 'Dr.', 'Jones ...']."""
    text = ("As shown in Fig. 3 of Smith et al. (2019), the effect holds. Dr. Jones disagreed. "
            "Values rose from 3.5 vs. 4.2 in Table 2. See Section 3.1.")
    assert split_sentences(text) == [
        "As shown in Fig. 3 of Smith et al. (2019), the effect holds.",
        "Dr. Jones disagreed.",
        "Values rose from 3.5 vs. 4.2 in Table 2.",
        "See Section 3.1.",
    ]


def test_sentence_chunks_on_scifact_keep_every_character(docs):
    """sentencex drops nothing: the sentences of an abstract are the abstract, whitespace aside."""
    for d in docs:
        sents = split_sentences(d.full_text)
        assert len(sents) > 1
        assert "".join(sents).replace(" ", "") == d.full_text.replace(" ", "").strip()


def test_korean_sentences_use_kiwipiepy():
    from kiwipiepy import Kiwi

    from evolve.chunking._strategies import _kiwi

    assert isinstance(_kiwi(), Kiwi)
    text = "한국어 문장을 나눕니다. 두 번째 문장은 마침표가 없어요 세 번째 문장입니다! 정말 그런가요?"
    got = split_sentences(text)
    assert got == [s.text for s in _kiwi().split_into_sents(text)]
    # kiwipiepy splits after the ending 없어요 although no punctuation follows it; a punctuation rule could not
    assert got == ["한국어 문장을 나눕니다.", "두 번째 문장은 마침표가 없어요", "세 번째 문장입니다!", "정말 그런가요?"]
    tok = load_tokenizer(MODEL)
    chunks = [c.text for c in chunker("sentences", 16, 0).chunk(Document("k", "", text))]
    assert all(tok.count(c) <= 16 for c in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")
