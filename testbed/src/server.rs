//! The loopback HTTP server under the stand-in servers ([`crate::fault_proxy`],
//! [`crate::hostile_glance`]): a free port of 127.0.0.1, served until dropped.

use axum::Router;

/// A server task; dropping it stops the server.
pub(crate) struct Served(tokio::task::JoinHandle<()>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `app` on a free port of 127.0.0.1; returns the port and what stops the server.
pub(crate) async fn serve(app: Router) -> (u16, Served) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, Served(task))
}
