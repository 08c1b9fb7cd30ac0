"""An isolated, stateful IPython sandbox for the model's code (issue 10; SPEC section 2).

    from inference.sandbox import Sandbox, SandboxConfig, Observation
    with Sandbox(SandboxConfig(mode="persistent", timeout_s=20.0)) as sb:
        with sb.session() as sess:           # one per trajectory; cheap; thread-safe
            obs = sess.run("x = 3\\nx * 2")  # Observation(text="6", status="ok")

Layout: `config` (SandboxConfig), `observation` (the reference's strings), `pool` (Sandbox, the
parent's side), `session`, `zygote` (the pre-warmed process that forks workers), `worker` and
`shell` (one trajectory's process and its IPython cells), `isolation` (namespaces, rlimits, uids),
`protocol` (JSON messages), `__main__` (the JSON-lines CLI).
"""

from .config import SandboxConfig
from .observation import Observation
from .pool import Sandbox
from .session import SandboxError, Session

__all__ = ["Observation", "Sandbox", "SandboxConfig", "SandboxError", "Session"]
