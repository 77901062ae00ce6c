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

# Sphinx configuration of the audit_notifier documentation.
#
#   python -m sphinx -W -b html doc/source doc/build/html
#
# No network: no intersphinx, no theme or extension beyond Sphinx itself,
# oslo.config's sphinxext (the configuration reference is generated from the
# package's oslo.config.opts entry point) and, when it can scan this git
# repository, reno's sphinxext for the release notes.  The local extension in
# _ext/ renders the shipped route maps and the captured notifications of
# tests/*/data into the pages.

import os
import sys
import warnings

# oslo.messaging's import (pulled in by the option list) warns about eventlet.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
warnings.filterwarnings('ignore', message=r'eventletutils module is deprecated')

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, '_ext'))
if REPO_ROOT not in sys.path:
    sys.path.insert(1, REPO_ROOT)          # document the working tree's audit_notifier

project = 'audit_notifier'
author = 'audit_notifier developers'
copyright = '2026, audit_notifier developers'

extensions = [
    'oslo_config.sphinxext',
    'audit_docs',
]

root_doc = 'index'
source_suffix = {'.rst': 'restructuredtext'}
exclude_patterns = ['_build', '_ext']
highlight_language = 'none'
pygments_style = 'sphinx'

html_theme = 'alabaster'
html_theme_options = {
    'description': 'CADF and Glance-format audit notifications for Glance and Magnum',
    'page_width': '1180px',
    'sidebar_width': '230px',
}
html_title = 'audit_notifier'
html_show_sourcelink = False


def _reno_directive():
    """reno's release-notes directive, rooted at this repository, or None.

    reno reads the notes from git history (it needs no tag and no network); when
    the tree is not a git checkout (an sdist, a copy) the page falls back to the
    notes files themselves.
    """
    try:
        from dulwich import repo as dulwich_repo
        from reno import sphinxext as reno_sphinxext
        dulwich_repo.Repo.discover(REPO_ROOT)
    except Exception:
        return None

    class ReleaseNotes(reno_sphinxext.ReleaseNotesDirective):
        def run(self):
            # reno resolves reporoot against the current directory; pin it here.
            self.options.setdefault('reporoot', REPO_ROOT)
            return super().run()

    return ReleaseNotes


def setup(app):
    directive = _reno_directive()
    if directive is None:
        import audit_docs
        directive = audit_docs.ReleaseNotesFallback
    app.add_directive('release-notes', directive, override=True)
