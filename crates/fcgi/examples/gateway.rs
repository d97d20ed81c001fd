//! A PHP application behind hyper in a few lines: every request goes through
//! `fcgi::gateway::Gateway` to php-fpm (no static files; see `fcgi serve`
//! for a complete server).
//!
//! ```text
//! cargo run -p fcgi --features http --example gateway -- /var/www/html unix:/run/php/php8.2-fpm.sock 127.0.0.1:8080
//! curl http://127.0.0.1:8080/index.php
//! ```

use std::net::SocketAddr;

use fcgi::gateway::{ConnectionInfo, Gateway};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tower_service::Service;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: gateway DOCUMENT_ROOT UPSTREAM [LISTEN]");
        std::process::exit(2);
    };
    let listen: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:8080").parse()?;

    let client = fcgi::AsyncClient::builder()
        .upstream(upstream.as_str())
        .build()?;
    let gateway = Gateway::builder(root).build(client)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let info = ConnectionInfo::new(Some(peer), tcp.local_addr().ok());
        let gateway = gateway.clone();
        tokio::spawn(async move {
            // Put the connection facts into each request, then hand it over.
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(info);
                    gateway.clone().call(request)
                });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await
            {
                eprintln!("connection from {peer}: {error}");
            }
        });
    }
}
