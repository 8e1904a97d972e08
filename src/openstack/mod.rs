//! OpenStack side: clouds.yaml parsing, Keystone v3 auth with a shared token cache, a typed
//! Glance v2 client, and the one error classifier. Every HTTP call to OpenStack is here.
