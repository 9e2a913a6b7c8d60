"""A desk that exists only for the tests: `acme`, reached over real HTTP.

It is added the way any desk is (a module exposing `DESK`, one registry line),
so the tests also prove that a desk is added without touching `plugin/`.
"""
