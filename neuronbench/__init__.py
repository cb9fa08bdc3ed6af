"""neuronbench from Python: load a task and a model by their conf/ names, read a cell's cached activations, rank
with any configured method, score any ranking or neuron set with any scorer, and look at single neurons.

    import neuronbench as nb
    exp = nb.load("templated_number", "minilm_l6")
    acts = exp.activations(layer=3)               # acts.X["train"], acts.y["train"], acts.label_names
    ranking = nb.rank("probeless", acts)
    nb.score(ranking, acts, scorers=["probe_acc"])
    view = nb.neuron_view(acts, int(ranking[0]))   # top/bottom words in context, per-label distribution, map
    nb.write_pages(nb.ranking_view(acts, ranking, method="probeless"), "results/neuron_pages")
    nb.concept_search(acts, int(ranking[0]))      # what the neuron detects: labels ranked, its formula
    nb.explain(acts, ranking[:10])                 # one row per neuron: best label, formula, train/test IoU
    print(nb.manipulate(acts, "the dog near the keys", ranking[:10], edit="zero"))  # frozen head per word, before/after

README "From Python" walks through it step by step.
"""

from neuronbench.concepts import ConceptSearch, concept_search, corpus_concepts, explain
from neuronbench.experiment import Activations, Experiment, config_names, load
from neuronbench.manipulate import Manipulation, manipulate
from neuronbench.pages import neuron_page, neuron_page_path, ranking_page, ranking_page_path, write_pages
from neuronbench.ranking import method, rank
from neuronbench.scoring import score
from neuronbench.views import NeuronView, RankingView, activation_map, neuron_view, ranking_view

__all__ = ["Activations", "ConceptSearch", "Experiment", "Manipulation", "NeuronView", "RankingView", "activation_map",
           "concept_search", "config_names", "corpus_concepts", "explain", "load", "manipulate", "method",
           "neuron_page", "neuron_page_path", "neuron_view", "rank", "ranking_page", "ranking_page_path",
           "ranking_view", "score", "write_pages"]
