"""The README's multi-turn example runs as written, and its env plays a tool call end to end."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_tool_env_runs_and_answers_a_call():
    section = README.read_text().split("## Multi-turn environments", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    env, tok = namespace["env"], namespace["textenv"].text_spec(namespace["env"]).tokenizer
    env.reset(seed=0)
    for part in [' <call>weather("Paris")</call>', " yes"]:
        for token in tok(part, add_special_tokens=False)["input_ids"]:
            obs, reward, done, _, info = env.step(token)
    obs, reward, done, _, info = env.step(tok.eos_token_id)
    text = tok.decode(obs["input_ids"][obs["attention_mask"].astype(bool)])
    assert text.endswith('<call>weather("Paris")</call> <result>sunny</result> yes<|endoftext|>')
    assert done and reward == 1.0 and info["finish_reason"] == "eos"
    assert [t["role"] for t in info["turns"]] == ["assistant", "tool", "assistant"]
