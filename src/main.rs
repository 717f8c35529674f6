fn main() {
    println!("wsloop");
}
