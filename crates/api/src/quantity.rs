//! Kubernetes resource quantities (`k8s.io/apimachinery/pkg/api/resource`).
