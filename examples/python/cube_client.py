#!/usr/bin/env python3
"""A Cube client in Python, generated from proto/cube.proto.

It submits a task, waits for it to run through WatchTasks, reads its logs, stops it, and waits
until it has completed; then it creates a service of 2 replicas, scales it to 3 and deletes it. Generate the stubs first (from the repository root):

    python3 -m grpc_tools.protoc -Iproto --python_out=examples/python \
        --grpc_python_out=examples/python proto/cube.proto

then run, with the manager's CA (its <data-dir>/tls/ca.pem) and a token
(`cube-manager token admin`):

    python3 examples/python/cube_client.py --manager 127.0.0.1:5555 \
        --ca-cert ca.pem --token "$CUBE_TOKEN" --image cube-test/busybox:latest

Without --token it speaks plaintext, which only a `cube-manager --dev` accepts.
"""

import argparse
import os
import sys
import time
import uuid

import grpc

import cube_pb2
import cube_pb2_grpc

# Every call carries a deadline; a user waiting on a task waits at most this long per step.
DEADLINE_SECONDS = 60


def wait_for_state(stub, task_id, wanted):
    """Follows WatchTasks for one task until it reaches one of `wanted` (a set of states)."""
    request = cube_pb2.WatchTasksRequest(task_ids=[task_id])
    for message in stub.WatchTasks(request, timeout=DEADLINE_SECONDS):
        if message.synced or not message.HasField("task"):
            continue
        task = message.task
        state = cube_pb2.TaskState.Name(task.state)
        print(f"  {task_id[:8]} is {state} {('on ' + task.node) if task.node else ''}".rstrip())
        if task.state in wanted:
            return task
        if task.state == cube_pb2.TASK_STATE_FAILED:
            raise SystemExit(f"task failed: {task.message}")
    raise SystemExit("the watch ended before the task got there")


def running_replicas(stub, name):
    """The tasks of service `name` that are RUNNING and wanted running."""
    listed = stub.ListTasks(cube_pb2.ListTasksRequest(service=name, page_size=1000),
                            timeout=DEADLINE_SECONDS)
    return [t for t in listed.tasks
            if t.state == cube_pb2.TASK_STATE_RUNNING
            and t.desired_state == cube_pb2.DESIRED_STATE_RUNNING]


def wait_replicas(stub, name, count):
    """Polls until service `name` has `count` replicas running."""
    deadline = time.time() + DEADLINE_SECONDS
    while len(running_replicas(stub, name)) != count:
        if time.time() > deadline:
            raise SystemExit(f"service {name} never had {count} replicas running")
        time.sleep(0.2)
    print(f"service {name}: {count} running")


def service_example(stub, image):
    """A service: 2 replicas kept running, scaled to 3, then removed (its tasks stop)."""
    name = f"python-svc-{uuid.uuid4().hex[:6]}"
    spec = cube_pb2.ServiceSpec(
        name=name,
        replicas=2,
        task=cube_pb2.TaskSpec(image=image, args=["sleep", "300"]),
    )
    created = stub.CreateService(cube_pb2.CreateServiceRequest(spec=spec),
                                 timeout=DEADLINE_SECONDS)
    print(f"service {name} created (version {created.service.version})")
    wait_replicas(stub, name, 2)
    stub.ScaleService(cube_pb2.ScaleServiceRequest(name=name, replicas=3),
                      timeout=DEADLINE_SECONDS)
    wait_replicas(stub, name, 3)
    stub.DeleteService(cube_pb2.DeleteServiceRequest(name=name), timeout=DEADLINE_SECONDS)
    # Once removed, the service is unknown (ListTasks by its name is NOT_FOUND): its tasks
    # are found among all tasks, by their slot.
    deadline = time.time() + DEADLINE_SECONDS
    while True:
        tasks = stub.ListTasks(cube_pb2.ListTasksRequest(page_size=1000),
                               timeout=DEADLINE_SECONDS).tasks
        if all(t.state == cube_pb2.TASK_STATE_COMPLETED for t in tasks if t.slot):
            break
        if time.time() > deadline:
            raise SystemExit(f"the tasks of service {name} never stopped")
        time.sleep(0.2)
    print(f"service {name} removed; its tasks stopped")


def open_channel(args):
    """TLS trusting the cluster CA, with the token on every call; plaintext without a token."""
    if not args.token:
        return grpc.insecure_channel(args.manager)
    if not args.ca_cert:
        raise SystemExit("--token needs --ca-cert (the manager's <data-dir>/tls/ca.pem)")
    with open(args.ca_cert, "rb") as f:
        tls = grpc.ssl_channel_credentials(root_certificates=f.read())
    # access_token_call_credentials sends "authorization: Bearer <token>".
    credentials = grpc.composite_channel_credentials(
        tls, grpc.access_token_call_credentials(args.token))
    return grpc.secure_channel(args.manager, credentials)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manager", default="127.0.0.1:5555", help="manager host:port")
    parser.add_argument("--image", default="cube-test/busybox:latest")
    parser.add_argument("--ca-cert", default=os.environ.get("CUBE_CA_CERT"),
                        help="the cluster CA (the manager's <data-dir>/tls/ca.pem)")
    parser.add_argument("--token", default=os.environ.get("CUBE_TOKEN"),
                        help="sent as 'authorization: Bearer TOKEN'")
    args = parser.parse_args()

    with open_channel(args) as channel:
        stub = cube_pb2_grpc.ManagerServiceStub(channel)

        spec = cube_pb2.TaskSpec(
            name="python-example",
            image=args.image,
            args=["sh", "-c", "echo hello from cube; sleep 300"],
        )
        submitted = stub.SubmitTask(
            cube_pb2.SubmitTaskRequest(spec=spec, request_id=str(uuid.uuid4())),
            timeout=DEADLINE_SECONDS,
        )
        task_id = submitted.task.id
        print(f"submitted {task_id}")

        wait_for_state(stub, task_id, {cube_pb2.TASK_STATE_RUNNING})

        # The first line may need a moment to reach the runtime's log.
        logs = b""
        deadline = time.time() + 10
        while b"hello from cube" not in logs and time.time() < deadline:
            logs = b"".join(
                chunk.data
                for chunk in stub.StreamLogs(
                    cube_pb2.StreamLogsRequest(task_id=task_id), timeout=DEADLINE_SECONDS
                )
            )
            if b"hello from cube" not in logs:
                time.sleep(0.2)
        print(f"logs: {logs.decode(errors='replace').strip()}")
        if b"hello from cube" not in logs:
            raise SystemExit("the task's output never showed up in its logs")

        stub.StopTask(cube_pb2.StopTaskRequest(task_id=task_id), timeout=DEADLINE_SECONDS)
        print(f"stop requested for {task_id}")
        wait_for_state(stub, task_id, {cube_pb2.TASK_STATE_COMPLETED})

        service_example(stub, args.image)
        print("done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        sys.exit(1)
