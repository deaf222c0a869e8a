"""Property-based fuzzing (hypothesis) of the env, the vector env, the reward-spec parser and the prompt loaders.

Any input gives a normal result or a documented error (``TypeError``/``ValueError``, of which
``ScorerError`` is one), and the env is usable afterwards. Bounded: few examples, tiny envs.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textenv import Prompt, TextGenEnv, load_prompts
from textenv.scorers import Callable, Length, Scorer, parse_spec
from textenv.vector import TextGenVectorEnv

pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_prompt_tokens:UserWarning")

PROMPTS = ["The movie was", "I liked the", "This film is", "Overall, the"]
T = 3
DOCUMENTED = (TypeError, ValueError)
# CI: 40 fixed examples per property (seconds). Explore with e.g. TEXTENV_FUZZ_EXAMPLES=2000 (random examples).
_EXAMPLES = int(os.environ.get("TEXTENV_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=_EXAMPLES <= 40,
)

# Values of every kind a caller might pass by mistake.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(-3, 3000), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
actions = st.one_of(
    st.integers(min_value=-5, max_value=1300),
    st.integers(min_value=0, max_value=1286).map(np.int64),
    st.integers(min_value=0, max_value=1286).map(lambda a: np.array(a)),
    st.integers(min_value=0, max_value=1286).map(torch.tensor),
    junk,
)
options = st.one_of(
    st.none(),
    st.fixed_dictionaries({"prompt_index": st.one_of(st.integers(-2, 6), junk)}),
    st.fixed_dictionaries({"prompt": st.one_of(st.text(max_size=12), st.sampled_from(PROMPTS), junk)}),
    st.fixed_dictionaries({"prompt": st.fixed_dictionaries({"prompt": st.text(max_size=8)})}),
    junk,
)
seeds = st.one_of(st.none(), st.integers(-3, 2**64), junk)


def lengthy(prompt, text, refs, meta):
    return float(len(text))


def make_env() -> TextGenEnv:
    return TextGenEnv(
        prompts=PROMPTS, reward=Length() + Callable(lengthy), max_new_tokens=T, max_prompt_tokens=6
    )


@pytest.fixture(scope="module")
def env():
    return make_env()


def assert_usable(env: TextGenEnv) -> None:
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for token in (5, 6, 0):
        obs, reward, terminated, _, info = env.step(token)
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        if terminated:
            assert set(info) >= {"text", "reward_terms"}
            break


@FUZZ
@given(ops=st.lists(st.tuples(st.sampled_from(["reset", "step"]), seeds, options, actions), max_size=8))
def test_env_any_calls(env, ops):
    for op, seed, opts, action in ops:
        try:
            if op == "reset":
                obs, info = env.reset(seed=seed, options=opts)
                assert env.observation_space.contains(obs) and isinstance(info["prompt"], str)
            else:
                obs, reward, _, truncated, info = env.step(action)
                assert env.observation_space.contains(obs) and np.isfinite(reward) and not truncated
        except DOCUMENTED:
            pass
    assert_usable(env)


class Wobbly(Scorer):
    """A terminal scorer whose output hypothesis chooses: sometimes fine, often broken."""

    name = "wobbly"

    def __init__(self):
        self.out = None

    def score(self, batch):
        if isinstance(self.out, Exception):
            raise self.out
        if isinstance(self.out, str) and self.out == "fine":
            return [0.5] * len(batch)
        return self.out


@FUZZ
@given(
    outputs=st.lists(
        st.one_of(
            junk,
            st.lists(
                st.one_of(st.floats(), st.integers(-(2**1100), 2**1100), st.text(max_size=2)), max_size=3
            ),
            st.just(RuntimeError("down")),
            st.just(KeyError("k")),
        ),
        min_size=1,
        max_size=4,
    ),
    tokens=st.lists(st.integers(0, 20), min_size=1, max_size=6),
)
def test_env_with_misbehaving_scorer(outputs, tokens):
    wobbly = Wobbly()
    env = TextGenEnv(prompts=PROMPTS, reward=wobbly, max_new_tokens=T)
    env.reset(seed=0)
    for i, token in enumerate(tokens):
        wobbly.out = outputs[i % len(outputs)]
        before = env.unwrapped.core.num_generated.clone()
        try:
            _, reward, terminated, _, _ = env.step(token)
            assert np.isfinite(reward)
            if terminated:
                env.reset()
        except DOCUMENTED:
            assert torch.equal(env.unwrapped.core.num_generated, before)  # a failed step changed nothing
    wobbly.out = [1.0]
    env.reset(seed=1)
    for token in (5, 6, 7):
        *_, info = env.step(token)
    assert info["reward_terms"]["wobbly"] == 1.0


vector_actions = st.one_of(
    st.lists(st.integers(-2, 1300), min_size=3, max_size=3).map(np.array),
    st.lists(st.integers(0, 1286), min_size=3, max_size=3).map(lambda a: np.array(a)[::-1]),
    st.lists(st.integers(0, 1286), min_size=3, max_size=3).map(torch.tensor),
    st.lists(st.integers(0, 20), min_size=0, max_size=5),
    junk,
)
masks = st.one_of(st.none(), st.lists(st.booleans(), min_size=3, max_size=3).map(np.array), junk)


@pytest.fixture(scope="module")
def vector_envs():
    return {
        mode: TextGenVectorEnv(
            num_envs=3,
            prompts=PROMPTS,
            reward=Length() + Wobbly(),
            max_new_tokens=T,
            autoreset_mode=mode,
            max_episode_steps=4,
        )
        for mode in AutoresetMode
    }


@FUZZ
@given(
    mode=st.sampled_from(list(AutoresetMode)),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["reset", "step", "step"]),
            st.one_of(seeds, st.lists(st.one_of(st.none(), st.integers(0, 9)), min_size=3, max_size=3)),
            options,
            masks,
            vector_actions,
            st.one_of(st.just("fine"), junk, st.just(RuntimeError("down"))),
        ),
        max_size=8,
    ),
)
def test_vector_env_any_calls_in_every_autoreset_mode(vector_envs, mode, ops):
    envs = vector_envs[mode]
    (wobbly,) = envs.reward.find(Wobbly)
    for op, seed, opts, mask, acts, out in ops:
        # The terminal scorer returns one value per finished episode, or junk, or raises.
        wobbly.out = out
        before = envs.ended, {k: v.copy() for k, v in envs._observations().items()}
        try:
            if op == "reset":
                if mask is not None and isinstance(opts, dict):
                    opts = {**opts, "reset_mask": mask}
                obs, _ = envs.reset(seed=seed, options=opts)
            else:
                obs, rewards, terminated, truncated, _ = envs.step(acts)
                assert rewards.shape == (3,) and np.isfinite(rewards).all()
                assert terminated.dtype == bool and truncated.dtype == bool
            assert envs.observation_space.contains(obs)
        except DOCUMENTED:
            # A failed call changes nothing.
            np.testing.assert_array_equal(envs.ended, before[0])
            for k, v in envs._observations().items():
                np.testing.assert_array_equal(v, before[1][k])
    wobbly.out = "fine"
    envs.reset(seed=0)
    for _ in range(T + 1):
        obs, *_ = envs.step(np.array([5, 6, 7]))
        assert envs.observation_space.contains(obs)
    if mode is AutoresetMode.DISABLED:
        assert envs.ended.all()


SPEC_WORDS = [
    "rouge",
    "bleu",
    "keyword",
    "length",
    "missing_eos",
    "rougeL",
    "rouge2",
    "recall",
    "all",
    "13a",
    "x",
]
spec_terms = st.lists(
    st.one_of(st.sampled_from(SPEC_WORDS), st.text(alphabet="abcxyz0123456789.-_,eE", max_size=5)),
    min_size=1,
    max_size=4,
).map(":".join)
specs = st.one_of(
    st.lists(
        st.tuples(
            st.one_of(st.just(""), st.sampled_from(["0.5*", "2 * ", "-1*", "1e3*", "nan*", "1e999*", "*"])),
            spec_terms,
        ),
        min_size=1,
        max_size=3,
    ).map(lambda terms: " + ".join(w + t for w, t in terms)),
    st.text(alphabet="+*: .,abklmnorsuw0123456789", max_size=16),
    junk,
)


@FUZZ
@given(spec=specs)
def test_reward_spec_parser(spec):
    # Model-loading specs (sentiment, reward_model, kl) are left out: their names would reach the hub.
    if isinstance(spec, str) and any(name in spec for name in ("sentiment", "reward_model", "kl")):
        return
    try:
        scorer = parse_spec(spec)
    except DOCUMENTED:
        return
    assert isinstance(scorer, Scorer)
    assert all(np.isfinite(w) for _, w, _ in scorer.terms())


records = st.one_of(
    st.text(max_size=10),
    st.dictionaries(
        st.sampled_from(["prompt", "references", "keywords", "other"]),
        st.one_of(st.text(max_size=6), st.lists(st.text(max_size=4), max_size=2), junk),
        max_size=3,
    ),
    junk,
)


@FUZZ
@given(source=st.one_of(st.lists(records, max_size=4), junk))
def test_prompt_loader_in_memory(source):
    try:
        prompts = load_prompts(source)
    except DOCUMENTED:
        return
    assert prompts and all(isinstance(p, Prompt) and p.text.strip() for p in prompts)


@FUZZ
@given(
    suffix=st.sampled_from([".txt", ".jsonl", ".csv", ".json", ""]),
    data=st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(records, max_size=3).map(
            lambda rs: "\n".join(__import__("json").dumps(r, default=str) for r in rs).encode()
        ),
        st.just(b"\xef\xbb\xbfprompt,references\nhello,hi\n"),
        st.just(b"[" * 50_000 + b"]" * 50_000),
    ),
)
def test_prompt_loader_files(suffix, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "prompts" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        try:
            prompts = load_prompts(path)
        except DOCUMENTED as err:
            if suffix in (".txt", ".jsonl", ".csv"):
                assert "prompt" in str(err)  # names the file or the prompt
            return
        assert prompts and all(isinstance(p, Prompt) for p in prompts)
        # Whatever loads also makes an env.
        TextGenEnv(prompts=prompts, reward="length", max_new_tokens=2).reset(seed=0)
