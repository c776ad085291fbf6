int broken_answer(void) {
  int answer = 42
  return answer;
}
