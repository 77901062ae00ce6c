"""A service's conf file for tests: written to disk and read by a fresh ConfigOpts."""

from __future__ import annotations

import textwrap

from oslo_config import cfg


def conf_file(tmp_path, text: str) -> cfg.ConfigOpts:
    """A ConfigOpts that read ``text`` (dedented) from ``tmp_path/service.conf``."""
    path = tmp_path / 'service.conf'
    path.write_text(textwrap.dedent(text))
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[str(path)])
    return conf
