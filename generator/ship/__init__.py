"""Shipping a built repository: publish to object storage (publish.py), Kubernetes manifests (deploy.py).
"""
