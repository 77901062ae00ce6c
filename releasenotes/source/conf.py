# reno's Sphinx configuration for the release notes.
extensions = ['reno.sphinxext']
project = 'audit_notifier Release Notes'
copyright = '2026, audit_notifier developers'
source_suffix = '.rst'
master_doc = 'index'
html_theme = 'alabaster'
