// The async client: a pool per upstream, balanced, with a bounded wait.
// cargo run -p fcgi --example async
use std::time::Duration;

use fcgi::{AsyncClient, Request};

#[tokio::main]
async fn main() -> Result<(), fcgi::Error> {
    let client = AsyncClient::builder()
        .upstream("unix:/run/php/php8.2-fpm.sock")
        .upstream("10.0.0.2:9000") // fewest outstanding requests wins
        .max_connections(4) // per upstream; at most pm.max_children
        .pool_wait_timeout(Duration::from_secs(5))
        .build()?;
    let form = Request::post(
        "/var/www/html/form.php",
        "application/x-www-form-urlencoded",
        "name=world",
    );
    let response = client.execute(form).await?;
    println!("{} {}", response.status, response.body_text());
    Ok(())
}
