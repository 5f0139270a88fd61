"""``flowcore serve`` and ``flowcore report``: a run as web pages and a JSON API.

The server only reads the store (runs, their logs) and writes to it through the run's inbox (answers,
cancels) or ``Engine.submit`` (new runs from the workflows of ``--workflows DIR``); whichever process
drives a run applies what the inbox holds. ``view`` builds what a page shows from a run's log,
``app`` is the HTTP side, ``report`` the run page as one file.
"""
