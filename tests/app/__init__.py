"""Tests of `deraindrop app` (a package so that they import `tests.helpers.video`)."""
