# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

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
