"""Evaluation: detections in the official results format, LVIS and COCO metrics, the evaluator."""
