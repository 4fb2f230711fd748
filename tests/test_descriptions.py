"""The descriptions the MLflow UI shows: headline first, in plain text; the chapter's story after."""

from fmtrain.analysis import descriptions
from fmtrain.analysis.comparison import SummaryRow
from fmtrain.learning import configs
from fmtrain.learning.scores import EvaluationScores, Scores

SCORES = {"final_val_loss": 0.32271, "final_val_accuracy": 0.88317, "stopped_epoch": 11.0,
          "best_epoch": 9.0, "fit_seconds": 16.0}


def test_a_finished_run_leads_with_its_result_then_its_chapter_step_and_changes():
    settings = configs.resolve("adam", {"epochs": "2", "limit": "500"}).to_params()
    text = descriptions.run_description("adam", settings, Scores.from_metrics(SCORES))
    first, *rest = text.splitlines()
    assert first == ("val_loss 0.3227, val_accuracy 0.8832 (the model kept), stopped_epoch 11, "
                     "best_epoch 9.")
    assert "The chapter's step: *RMSprop vs Adam*." in rest
    assert "Changes from the default: dropout_rate=0.0, patience=none, checkpoint=false." in rest
    assert "Set for this run: epochs=2, limit=500." in rest


def test_a_starting_run_has_its_story_and_the_params_a_run_logged_read_the_same():
    assert descriptions.run_description("early-stopping", configs.DEFAULT.to_params()).splitlines() == [
        "The chapter's step: *EarlyStopping(patience=2, restore_best_weights=True)*.", "",
        "Changes from the default: nothing (this is the chapter's final model)."]
    # `mlflow run` logs whole numbers declared as floats ("5.0"); other params are not settings.
    logged = {"config": "rmsprop-5", "epochs": "5.0", "batch_size": "32", "data_source": "/data"}
    assert "Set for this run" not in descriptions.run_description("rmsprop-5", logged)
    assert descriptions.run_description("no-such-config", logged, Scores.from_metrics(SCORES)).startswith("val_loss 0.3227")


def test_a_sweep_leads_with_its_best_child_then_its_table():
    best = SummaryRow("dropout", "43", "FINISHED", "adam", "0.3", "20", 20, 19, 14, 0.3214, 0.3260,
                      0.8861, 0.8861, 28.6, "r1")
    text = descriptions.sweep_description(["adam", "dropout"], {"epochs": "5"}, "| table |", best)
    lines = text.splitlines()
    assert lines[0] == "Best: dropout, final val_loss 0.3260, val_accuracy 0.8861 (tag fmtrain.best_config)."
    assert "Sweep of 2 configurations of the chapter: adam, dropout; epochs=5 for every child." in text
    assert lines[-1] == "| table |"
    seeded = descriptions.sweep_description(["adam", "dropout"], {}, "| table |", best, seeds=["42", "43"])
    assert seeded.startswith("Best: dropout (seed 43), final val_loss 0.3260")
    assert "adam, dropout, each with seeds 42, 43. The figure" in seeded


def test_a_version_names_its_configuration_run_and_test_scores():
    params = configs.resolve("dropout").to_params() | {"config": "dropout"}
    test = {"log_loss": 0.3509, "accuracy_score": 0.8747, "f1_score": 0.8737, "example_count": 10000.0}
    text = descriptions.version_description("r1", params, Scores.from_metrics(SCORES), EvaluationScores.from_metrics(test),
                                            "e1")
    assert text.splitlines()[0] == ("dropout: val_loss 0.3227, val_accuracy 0.8832 (the model kept), "
                                    "stopped_epoch 11, best_epoch 9; test accuracy 0.8747.")
    assert "From run `r1`." in text and "*Dropout(0.3)*" in text
    assert text.splitlines()[-1] == ("**Test set** (the 10,000 held-out images, evaluation run `e1`): "
                                     "accuracy 0.8747, F1 0.8737, log loss 0.3509.")
    assert descriptions.evaluation_description("models:/fm/1", EvaluationScores.from_metrics(test), "fm version 1") == (
        "Test accuracy 0.8747, F1 0.8737, log loss 0.3509 on the 10,000 held-out test images (MLflow's classifier "
        "evaluator: per-class metrics, confusion matrix, ROC and precision-recall curves in Artifacts).\n\n"
        "Model: `models:/fm/1` (fm version 1).")
    assert "Test set" not in descriptions.version_description("r1", params, Scores.from_metrics(SCORES))
