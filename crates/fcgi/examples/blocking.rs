// The blocking client: one request to php-fpm, no runtime.
// cargo run -p fcgi --example blocking
use fcgi::{Client, Config, Request};

fn main() -> Result<(), fcgi::Error> {
    let client = Client::with_config(
        "unix:/run/php/php8.2-fpm.sock",
        Config::default().keep_alive(true),
    )?;
    let response = client.execute(
        Request::get("/var/www/html/index.php?page=2").param("HTTP_ACCEPT", "text/html"),
    )?;
    println!("{} {}", response.status, response.reason);
    for cookie in response.headers.get_all("Set-Cookie") {
        println!("cookie: {}", String::from_utf8_lossy(cookie));
    }
    print!("{}", response.body_text());
    eprint!("{}", response.stderr_text()); // PHP's warnings
    Ok(())
}
