"""``reenact doctor``: what can run here — pretrained weights, face-analysis backends, and metrics.

Every row says whether the piece is available and, when it is not, why and how to enable it (the file to
place and where, or the environment variable to set). Nothing is downloaded.
"""

from __future__ import annotations

from typing import Any


def weight_rows() -> list[dict[str, Any]]:
    from reenact.weights import doctor_rows

    return [{"name": r["name"], "available": r["status"] == "found", "where": r["path"] or r["reason"],
             "what": r["description"]} for r in doctor_rows()]


def backend_rows() -> list[dict[str, Any]]:
    from reenact.face.identity import IDENTITY_BACKENDS, get_identity_backend
    from reenact.face.landmarks import LANDMARK_BACKENDS, get_landmark_backend
    from reenact.face.pose import POSE_BACKENDS, get_pose_backend
    from reenact.face.pyfeat_backend import PyFeatAUBackend

    rows = []
    for kind, names, get in (("landmarks", LANDMARK_BACKENDS, get_landmark_backend),
                             ("identity", IDENTITY_BACKENDS, get_identity_backend),
                             ("pose", POSE_BACKENDS, get_pose_backend),
                             ("action units", ("py-feat",), lambda name: PyFeatAUBackend())):
        for name in names:
            try:
                backend = get(name)
                reason = backend.unavailable_reason()
                described = backend.describe()
            except Exception as error:  # a backend that cannot even be built still gets its row
                reason, described = f"{type(error).__name__}: {error}", name
            rows.append({"kind": kind, "name": name, "available": reason is None,
                         "where": described if reason is None else reason})
    from reenact.face.action_units import BACKEND as GEOMETRY_AUS

    # The default AU estimator runs on any landmark backend's points: nothing of its own to load.
    rows.insert(next(i for i, row in enumerate(rows) if row["kind"] == "action units"),
                {"kind": "action units", "name": "geometry", "available": True, "where": GEOMETRY_AUS})
    return rows


def metric_rows() -> list[dict[str, Any]]:
    from reenact.metrics import get_metric_class, list_metrics

    rows = []
    for name in list_metrics():
        cls = get_metric_class(name)
        try:
            metric = cls()
            reason = metric.unavailable_reason()
            backend = metric.backend()
        except Exception as error:
            reason, backend = f"{type(error).__name__}: {error}", "?"
        rows.append({"name": name, "available": reason is None, "protocols": list(cls.protocols),
                     "where": backend if reason is None else reason})
    return rows


def report() -> dict[str, list[dict[str, Any]]]:
    return {"weights": weight_rows(), "backends": backend_rows(), "metrics": metric_rows()}
