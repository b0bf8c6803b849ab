"""A nightly training task on one MIG instance, through migward.

KubernetesPodOperator starts each task as a pod from pod_template.yaml (next
to this file), whose runtimeClassName sends it through migward; the task's
container_resources ask the NVIDIA device plugin for one 1g.10gb instance.
The task sees that instance and no other GPU, and no other pod holds it until
the task's pod ends.

Needs apache-airflow-providers-cncf-kubernetes; copy both files into the DAG
folder.
"""

from pathlib import Path

import pendulum
from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

POD_TEMPLATE = str(Path(__file__).parent / "pod_template.yaml")

with DAG(
    dag_id="migward_mig_training",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gpu", "migward"],
) as dag:
    KubernetesPodOperator(
        task_id="train",
        name="train",
        namespace="airflow",
        pod_template_file=POD_TEMPLATE,
        image="nvidia/cuda:12.4.1-base-ubuntu22.04",
        cmds=["nvidia-smi"],
        arguments=["-L"],
        # The limit the device plugin grants from; migward then leases the
        # granted instance to this pod alone.
        container_resources=k8s.V1ResourceRequirements(
            limits={"nvidia.com/mig-1g.10gb": "1"},
        ),
        get_logs=True,
    )
