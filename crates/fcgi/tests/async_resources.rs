//! Resource hygiene of the async client: many requests with connection
//! churn, pooled connections, body-writer tasks and abandoned streams leave
//! no growth in open file descriptors, threads or memory. Alone in its own
//! test binary, as it counts the whole process's descriptors and threads.
#![cfg(feature = "tokio")]

use fcgi::{AsyncClient, Request};
use fcgi_testkit::fake::respond_stdin_len;
use fcgi_testkit::FakeServer;

const REQUESTS: usize = 20_000;
const TASKS: usize = 4;

/// One round of mixed traffic from `TASKS` tasks sharing two clients (one
/// without keep-alive, one pooling kept connections); the clients are
/// dropped at the end, as their pools' idle connections would be counted.
async fn run(address: &str, requests: usize) {
    let churn = AsyncClient::builder()
        .upstream(address)
        .keep_alive(false)
        .build()
        .unwrap();
    let kept = AsyncClient::new(address).unwrap();
    let big = bytes::Bytes::from(vec![7u8; 100_000]);
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (churn, kept, big) = (churn.clone(), kept.clone(), big.clone());
            tokio::spawn(async move {
                for i in 0..requests / TASKS {
                    let client = if i % 2 == 0 { &churn } else { &kept };
                    match (i + t) % 50 {
                        // A body large enough for a body-writer task.
                        0 => {
                            let request =
                                Request::post("/x", "application/octet-stream", big.clone());
                            let r = client.execute(request).await.unwrap();
                            assert_eq!(r.body, b"100000");
                        }
                        // A stream abandoned after its first chunk.
                        1 => {
                            let mut stream = client.stream(Request::get("/x")).await.unwrap();
                            stream.next_chunk().await.unwrap();
                        }
                        _ => {
                            let r = client.execute(Request::get("/x")).await.unwrap();
                            assert_eq!(r.body, b"0");
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn twenty_thousand_async_requests_leave_no_fd_thread_or_memory_growth() {
    let server = FakeServer::unix(respond_stdin_len());
    let address = server.address();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    server.assert_load_leaves_no_growth(
        |n| runtime.block_on(run(&address, n)),
        1_000,
        REQUESTS,
        16 * 1024,
    );
}
