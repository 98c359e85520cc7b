"""kubetask: a Kubernetes-native GPU task queue."""

__version__ = "0.1.0"
GROUP = "kubetask.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
