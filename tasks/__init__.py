"""Concept tasks: CoNLL-U treebanks, templated sentences and their control tasks."""
